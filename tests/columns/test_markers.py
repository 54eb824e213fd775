import numpy as np
import pandas as pd

from stemqd.columns.markers import column_markers
from stemqd.io import from_array, to_signal


def test_markers_sit_on_the_columns_in_nm():
    columns = pd.DataFrame({"x_nm": [0.1, 0.5], "y_nm": [0.2, 0.7], "label": ["Cs", "PbBr"]})
    markers = column_markers(columns)
    assert np.allclose(markers.kwargs["offsets"], [[0.1, 0.2], [0.5, 0.7]])
    frames = np.zeros((1, 40, 40), np.float32)
    stack = from_array(frames, 0.5, voltage_kv=300.0, convergence_mrad=18.0, name="x.tif")
    signal = to_signal(stack)
    signal.add_marker(markers, permanent=True)
    assert signal.axes_manager.signal_axes[0].units == "nm"
