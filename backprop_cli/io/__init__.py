"""Reading what the user gives (programs, NAME=VALUE values, data files) and writing
output files atomically. Uses the core only."""
