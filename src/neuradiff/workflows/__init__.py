"""One library call per command: each ``run_*`` reads its inputs, does the work and writes the outputs.

The CLI parses arguments and shows progress; notebooks and scripts call these directly.
"""

from neuradiff.methods import place_model
from neuradiff.workflows.demo import DemoSummary, run_demo
from neuradiff.workflows.evaluate import run_evaluate
from neuradiff.workflows.fit import (
    FitSummary,
    fit_training_data,
    load_training_data,
    prepare_training_data,
    read_fit_config,
    run_fit,
    write_fit,
)
from neuradiff.workflows.forecast import (
    ForecastSummary,
    forecast_frames,
    forecast_intervals,
    forecast_table,
    run_forecast,
    write_forecast,
)
from neuradiff.workflows.measure import MeasureSummary, run_measure
from neuradiff.workflows.schemas import config_schemas, write_schemas
from neuradiff.workflows.simulate import (
    run_simulate,
    run_simulate_fields,
    simulate_dataset,
    simulation_config,
    write_dataset_folder,
)
from neuradiff.workflows.track import TrackSummary, masks_of, recognise_video, run_track, write_track

__all__ = [
    "DemoSummary",
    "FitSummary",
    "ForecastSummary",
    "MeasureSummary",
    "TrackSummary",
    "config_schemas",
    "fit_training_data",
    "forecast_frames",
    "forecast_intervals",
    "forecast_table",
    "load_training_data",
    "masks_of",
    "place_model",
    "prepare_training_data",
    "read_fit_config",
    "recognise_video",
    "run_demo",
    "run_evaluate",
    "run_fit",
    "run_forecast",
    "run_measure",
    "run_simulate",
    "run_simulate_fields",
    "run_track",
    "simulate_dataset",
    "simulation_config",
    "write_dataset_folder",
    "write_fit",
    "write_forecast",
    "write_schemas",
    "write_track",
]
