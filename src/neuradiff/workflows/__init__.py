"""One library call per command: each ``run_*`` reads its inputs, does the work and writes the outputs.

The CLI parses arguments and shows progress; notebooks and scripts call these directly.
"""

from neuradiff.workflows.demo import DemoSummary, run_demo
from neuradiff.workflows.evaluate import run_evaluate
from neuradiff.workflows.fit import FitSummary, load_training_data, read_fit_config, run_fit
from neuradiff.workflows.forecast import ForecastSummary, run_forecast
from neuradiff.workflows.measure import MeasureSummary, run_measure
from neuradiff.workflows.schemas import config_schemas, write_schemas
from neuradiff.workflows.simulate import run_simulate, run_simulate_fields, simulation_config
from neuradiff.workflows.track import TrackSummary, run_track

__all__ = [
    "DemoSummary",
    "FitSummary",
    "ForecastSummary",
    "MeasureSummary",
    "TrackSummary",
    "config_schemas",
    "load_training_data",
    "read_fit_config",
    "run_demo",
    "run_evaluate",
    "run_fit",
    "run_forecast",
    "run_measure",
    "run_simulate",
    "run_simulate_fields",
    "run_track",
    "simulation_config",
    "write_schemas",
]
