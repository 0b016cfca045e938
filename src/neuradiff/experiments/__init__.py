"""The paper's experiments on synthetic data whose physics is known: NeuraDiff next to the other method
families, scored and written up as a self-contained report (``neuradiff evaluate``)."""
