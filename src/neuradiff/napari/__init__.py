"""napari plugin (npe2 manifest ``napari.yaml``): open recordings and the folders neuradiff writes as layers
with their scale in nm and s."""

from neuradiff.napari.reader import layers_of, napari_get_reader

__all__ = ["layers_of", "napari_get_reader"]
