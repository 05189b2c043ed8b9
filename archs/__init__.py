"""Your own architectures, for the pipeline: a module here, e.g. archs/mine.py with a
`build(in_channels, num_classes, input_size)` returning a torch.nn.Module, is listed in
params.yaml as `archs.mine:build`. DVC watches this folder: editing the module reruns
that architecture's stages (stage model@archs.mine:build hashes the file), and only them."""
