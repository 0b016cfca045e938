"""Writing results for people and other tools: measurement tables and plots, the overlay video, the evaluation
report (HTML, figures, CSV). Nothing here computes a measurement; it only writes what other rooms computed."""
