#!/bin/sh
# A blog post's zero_grad / backward / step with nn.Linear(1, 1) and MSE: initial weight
# -0.2505 and bias 0.9166, inputs 1, 2, 3, targets 1.5, 2.5, 3.5. The forward pass gives
# 0.6661, 0.4156, 0.1651; the gradients are dL/dw = -10.0049 and dL/db = -4.1688; one SGD
# step at lr 0.01 updates the parameters.
# expect: predict (before training) 1 0.666100025177002
# expect: predict (before training) 3 0.16509997844696045
# expect: 	grad (batch of 3): b=-4.168799877166748, w=-10.00493335723877
# expect: progress: 0 5.387223720550537
here=$(dirname "$0")
. "$here/lib/find_backprop.sh"
"$BACKPROP" train affine --x 1,2,3 --y 1.5,2.5,3.5 --init w=-0.2505,b=0.9166 --epochs 1 --lr 0.01 --dtype float32 --verbose --predict 1,2,3 --digits 0
