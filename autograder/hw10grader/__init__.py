"""HW10 autograder: the judge (holds hidden checks) and its sandbox boundary."""
