"""Running untrusted code: does a snippet run? The sandbox (`sandbox`, `confine`), the offline hub it loads
models from (`offline_hub`), the binding of its free names (`binding`), the kwarg audit and the torchvision shim
that run inside the worker, the executor that turns a snippet into a verdict (`executor`), the mutants that test
the harness and the judges (`mutants`), and the `apirl exec` stage (`stage`)."""
