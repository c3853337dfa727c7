#!/bin/sh
# The training session of lesson 3 of Liu Er's PyTorch course (《PyTorch深度学习实践》):
# the model yhat = x*w on x = 1, 2, 3 and
# y = 2, 4, 6, starting from w = 1, with the loss (yhat - y)**2 and per-sample SGD at
# lr 0.01 for 100 epochs, in PyTorch's float32. Every line (grad:, progress:, predict)
# matches the lesson's PyTorch script digit for digit.
# expect: predict (before training) 4 4.0
# expect: 	grad: 3.0 6.0 -16.228801727294922
# expect: progress: 0 7.315943717956543
# expect: progress: 99 9.094947017729282e-13
# expect: predict (after training) 4 7.999998569488525
here=$(dirname "$0")
. "$here/lib/find_backprop.sh"
"$BACKPROP" train linear --epochs 100 --dtype float32 --verbose --digits 0
