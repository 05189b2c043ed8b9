"""DVC's SSH remote checks the server's host key (installed into .venv by `make install`).

dvc-ssh connects through sshfs, which hands asyncssh `known_hosts=None` unless its caller
names one, and dvc-ssh never does: any host key is accepted, so `dvc push` would send the
results to whatever answers at the remote's address. `make install` puts this module and
nads-ssh-known-hosts.pth (which imports it when Python starts) into the environment: when
sshfs is first imported, its file system defaults to `known_hosts=()`, asyncssh's (and
OpenSSH's) default: ~/.ssh/known_hosts. A host that is not listed there is refused
("Host key is not trusted for host ...") before anything is sent. A Python that never
touches SSH loads nothing more than this file.
"""

import importlib.machinery
import sys


def _check_host_keys(cls) -> None:
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("known_hosts", ())
        init(self, *args, **kwargs)

    cls.__init__ = __init__


class _OnImport:
    """Patches sshfs.spec right after it is executed, whoever imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "sshfs.spec":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _check_host_keys(module.SSHFileSystem)

        spec.loader.exec_module = exec_module
        return spec


if not any(isinstance(f, _OnImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _OnImport())
