"""What the commands compute, as plain data: the gradient report, Jacobians and
Hessians, explanations, many points, random checks, model specs and training."""
