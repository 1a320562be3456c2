"""Small generated universes as windows, and a time-ordered fit / carve-out / test split with gaps between."""

import numpy as np

from keras_synapse.data.synthetic import generate_universe
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.windows.dataset import build_windowed_panel

HORIZON, LENGTH = 5, 10


def windowed_universe(num_symbols, num_bars, seed, **options):
    """The core features' windows of `LENGTH` bars and `HORIZON`-bar labels of a generated universe.

    `options` go to `generate_universe` (`signal`, `oracle_ic`, ...).
    """
    panel = generate_universe(num_symbols=num_symbols, num_bars=num_bars, seed=seed, **options).panel
    return build_windowed_panel(compute_features(panel, "core"), compute_labels(panel, horizon=HORIZON), LENGTH,
                                HORIZON)


def chronological_split(windowed, fit_share, validation_end_share):
    """Fit, carve-out and test window ends in time order, 10 days (more than a horizon of bars) apart.

    No fit label reaches into the carve-out, no carve-out label into the test windows.

    Returns:
        A dict: `fit`, `validation`, `test` (window ends) and `fit_end` (the fit part's last timestamp).
    """
    ends = windowed.labelled_ends()
    times = windowed.timestamps[ends]
    fit_end, validation_end = np.quantile(times, [fit_share, validation_end_share])
    gap = np.timedelta64(10, "D")
    return {"fit": ends[windowed.label_end_times[ends] < fit_end],
            "validation": ends[(times > fit_end + gap) & (windowed.label_end_times[ends] < validation_end)],
            "test": ends[times > validation_end + gap], "fit_end": fit_end}
