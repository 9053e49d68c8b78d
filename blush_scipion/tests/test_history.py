"""The drivers' per-iteration records (engine/history.py): a checkpoint's state as the code before the
records wrote it (plain dicts) loads, and is written again with the same keys, in the same order,
and the same values."""

import json

import pytest

from blush_scipion.engine.classify2d import Class2DState
from blush_scipion.engine.classify3d import Class3DState
from blush_scipion.engine.history import Class2DRecord, Class3DRecord, Refine3DRecord
from blush_scipion.engine.refine3d import RefineState

# states as run_itNNN_optimiser.json held them before the records (a refine3d, class2d and class3d run
# of 160 particles, 32 px; the spectra shortened)
REFINE = {
    "iteration": 2,
    "order": 2,
    "offset_range": 5.0,
    "offset_step": 2.0,
    "r_current": 16,
    "best_resolution": 9.129255549375022,
    "iterations_without_gain": 0,
    "smallest_angular_change": 57.71245193481445,
    "final": False,
    "poses_given": False,
    "done": False,
    "sigma2": [[1.5, 0.25, 0.125]],
    "fsc": [1.0, 0.99, 0.5],
    "history": [
        {
            "iteration": 1,
            "resolution": 11.848817175960006,
            "healpix_order": 2,
            "angular_step": 15.0,
            "local": False,
            "offset_step": 2.0,
            "offset_range": 5.0,
            "r_current": 8,
            "angular_change": 126.19963073730469,
            "offset_change": 2.138925075531006,
            "accuracy_rotation": 29.170000076293945,
            "accuracy_translation_angstrom": 3.8610000014305115,
            "seconds": 5.3,
            "expectation_seconds": 2.5,
            "maximization_seconds": 1.5,
            "accuracy_seconds": 1.2,
            "blush": False,
            "blush_seconds": 0.0,
            "peak_rss_gb": 0.649,
        },
        {
            "iteration": 2,
            "resolution": 9.129255549375022,
            "healpix_order": 2,
            "angular_step": 15.0,
            "local": False,
            "offset_step": 2.0,
            "offset_range": 5.0,
            "r_current": 14,
            "angular_change": 57.71245193481445,
            "offset_change": 0.6324555277824402,
            "accuracy_rotation": 15.790000438690186,
            "accuracy_translation_angstrom": 2.0129999220371246,
            "seconds": 7.4,
            "expectation_seconds": 3.8,
            "maximization_seconds": 2.8,
            "accuracy_seconds": 0.8,
            "blush": True,
            "blush_seconds": 0.4,
            "peak_rss_gb": 0.89,
            "cuda_peak_allocated_gb": 1.25,
        },
    ],
    "wall_seconds": 14.647443056106567,
}
CLASS2D = {
    "iteration": 12,
    "r_current": 16,
    "sigma2": [[2.0, 1.0], [3.0, 0.5]],
    "sigma_offset": 1.3075706559121907,
    "distribution": [0.4, 0.6],
    "resolution": [12.0, 9.6],
    "batch_weights": [160.0, 80.5],
    "history": [
        {
            "iteration": 1,
            "resolution": 32.0,
            "r_current": 14,
            "particles": 40,
            "class_changes": 1.0,
            "sigma_offset_px": 1.49,
            "seconds": 0.2,
            "m_step_seconds": 0.0,
        }
    ],
}
CLASS3D = {
    "iteration": 2,
    "r_current": 13,
    "sigma2": [[2.0, 1.0]],
    "sigma_offset": 1.3949369721889586,
    "distribution": [0.4, 0.6],
    "resolution": [32.0, 32.0],
    "history": [
        {
            "iteration": 1,
            "class_distribution": [0.5, 0.5],
            "class_resolution_angstrom": [32.0, 32.0],
            "r_current": 12,
            "class_changes": 1.0,
            "angular_change": None,
            "sigma_offset_px": 1.45,
            "seconds": 9.1,
            "expectation_seconds": 5.6,
            "maximization_seconds": 3.5,
        },
        {
            "iteration": 2,
            "class_distribution": [0.4012, 0.5988],
            "class_resolution_angstrom": [32.0, 32.0],
            "r_current": 13,
            "class_changes": 0.3938,
            "angular_change": 82.52660369873047,
            "sigma_offset_px": 1.39,
            "seconds": 11.3,
            "expectation_seconds": 5.6,
            "maximization_seconds": 5.7,
        },
    ],
    "wall_seconds": 21.491921424865723,
}


@pytest.mark.parametrize(
    "state_class, saved, record",
    [
        (RefineState, REFINE, Refine3DRecord),
        (Class2DState, CLASS2D, Class2DRecord),
        (Class3DState, CLASS3D, Class3DRecord),
    ],
)
def test_a_checkpoint_from_before_the_records_loads_and_is_written_the_same(state_class, saved, record):
    saved = json.loads(json.dumps(saved))  # as read from the file
    state = state_class.from_json(saved)
    assert all(isinstance(entry, record) for entry in state.history)
    assert state.history[0].iteration == 1
    written = json.dumps(state.to_json())
    assert written == json.dumps(saved)  # the same keys, in the same order, the same values


def test_fields_a_record_has_and_an_old_checkpoint_lacks_stay_out_of_its_json():
    """History entries of earlier versions lack later keys (accuracy_seconds, peak_rss_gb): they
    load, and are written as they were; keys the record no longer knows are dropped."""
    old = {k: v for k, v in REFINE["history"][0].items() if k not in ("accuracy_seconds", "peak_rss_gb")}
    entry = Refine3DRecord.from_json({**old, "retired_key": 1})
    assert entry.accuracy_seconds is None and entry.to_json() == old
    assert list(entry.to_json()) == list(old)


def test_a_refine3d_checkpoint_from_before_optics_groups_loads():
    state = RefineState.from_json({**REFINE, "sigma2": [1.5, 0.25, 0.125]})
    assert state.sigma2 == [[1.5, 0.25, 0.125]]


def test_none_is_written_where_it_is_a_value_and_left_out_where_it_means_absent():
    """class3d's first iteration has no angular change (null); a CPU run has no CUDA peak (no key)."""
    first = Class3DRecord.from_json(CLASS3D["history"][0])
    assert first.angular_change is None and first.to_json()["angular_change"] is None
    older = {k: v for k, v in CLASS3D["history"][1].items() if k != "angular_change"}
    assert Class3DRecord.from_json(older).to_json() == older
    cpu = Refine3DRecord(**{**REFINE["history"][0], "cuda_peak_allocated_gb": None})
    assert cpu.to_json() == REFINE["history"][0]
