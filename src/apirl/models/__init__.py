"""Policy models: loading by spec (`load`) and batched generation in the Gorilla answer format (`generation`)."""
