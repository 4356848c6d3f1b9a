"""flotilla_kit: the chassis every Flotilla service imports.

Import what you need from its modules: `flotilla_kit.settings`, `.logs`, `.problems`,
`.app`, `.db`, `.migrations`, `.tls`, `.tokens`, `.security`, `.rbac`, `.server`,
`.devservers`.
"""

__all__: list[str] = []
__version__ = "0.1.0"
