"""The napari dock widget's module imports napari and Qt and holds no doctest: it is not collected for doctests
(``tests/test_napari_widget.py`` drives it in a real viewer where the ``napari`` extra is installed), so that
collecting the suite does not pay napari's import."""

collect_ignore = ["src/neuradiff/napari/widget.py"]
