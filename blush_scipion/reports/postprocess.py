"""What a post-processing run wrote (postprocess.star, summary.json), as plot data, and its plots as
PNGs (no Scipion import)."""

import json

import starfile

from .plots import plot_fsc, plot_guinier, render_png

# postprocess.star's data_fsc columns, as RELION names them, and the legends they get
FSC_CURVES = {
    "corrected": "rlnFourierShellCorrelationCorrected",
    "masked": "rlnFourierShellCorrelationMaskedMaps",
    "unmasked": "rlnFourierShellCorrelationUnmaskedMaps",
    "phase-randomised (masked)": "rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps",
}
GUINIER_CURVES = {
    "original": "rlnLogAmplitudesOriginal",
    "FSC-weighted": "rlnLogAmplitudesWeighted",
    "sharpened": "rlnLogAmplitudesSharpened",
}


def _tables(extra) -> dict:
    return starfile.read(extra("postprocess.star"), always_dict=True)


def postprocess_summary(extra) -> dict:
    """summary.json: resolution_angstrom, bfactor, bfactor_fitted, guinier_correlation, ..."""
    return json.loads(open(extra("summary.json")).read())


def postprocess_fsc_curves(extra) -> dict:
    """{legend: (frequency 1/A, FSC)} for the corrected, masked, unmasked and phase-randomised curves."""
    fsc = _tables(extra)["fsc"]
    return {
        label: (fsc["rlnResolution"].to_numpy(), fsc[column].to_numpy())
        for label, column in FSC_CURVES.items()
    }


def postprocess_guinier(extra, fit_low: float = 10.0, fit_high: float | None = None):
    """(1/d^2, {legend: ln amplitudes}, fit) for plot_guinier; fit is None where the B-factor was given,
    else its line over `fit_low`..`fit_high` A (as `blush postprocess --autob-highres`: None, the final
    resolution; 0, as far as the weighted amplitudes reach)."""
    tables, summary = _tables(extra), postprocess_summary(extra)
    guinier = tables["guinier"]
    x = guinier["rlnResolutionSquared"].to_numpy()
    curves = {label: guinier[column].to_numpy() for label, column in GUINIER_CURVES.items()}
    fit = None
    if summary["bfactor_fitted"]:
        general = tables["general"]
        high = summary["resolution_angstrom"] if fit_high is None else fit_high
        if high == 0:
            high = float(x[curves["FSC-weighted"] > -99].max() ** -0.5)
        fit = (
            float(general["rlnFittedSlopeGuinierPlot"]),
            float(general["rlnFittedInterceptGuinierPlot"]),
            (fit_low, high),
        )
    return x, curves, fit


def fsc_title(extra) -> str:
    return f"Post-process FSC: final resolution {postprocess_summary(extra)['resolution_angstrom']:.2f} Å"


def guinier_title(extra) -> str:
    s = postprocess_summary(extra)
    how = f"fitted, r² {s['guinier_correlation']:.2f}" if s["bfactor_fitted"] else "given"
    return f"Guinier plot: B-factor {s['bfactor']:.1f} Å² ({how})"


def write_postprocess_pngs(extra, fit_low: float = 10.0, fit_high: float | None = None) -> list[str]:
    """fsc.png and guinier.png beside the run's files; `extra(name)` gives a path."""
    return [
        render_png(
            extra("fsc.png"), lambda ax: plot_fsc(ax, postprocess_fsc_curves(extra), fsc_title(extra))
        ),
        render_png(
            extra("guinier.png"),
            lambda ax: plot_guinier(
                ax, *postprocess_guinier(extra, fit_low, fit_high), title=guinier_title(extra)
            ),
        ),
    ]
