"""The napari dock widget imports napari and Qt: its module is collected (for doctests) only where the ``napari``
extra (napari and a Qt binding) is installed."""

from importlib.util import find_spec

_QT = any(find_spec(binding) for binding in ("PySide6", "PyQt6", "PyQt5", "PySide2"))
collect_ignore = [] if find_spec("napari") and find_spec("qtpy") and _QT else ["src/neuradiff/napari/widget.py"]
