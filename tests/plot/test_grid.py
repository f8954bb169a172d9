import numpy as np
import pytest

from pyrogen.plot import image_grid
from pyrogen.plot.grid import tile


def test_image_grid_labels_each_row_at_its_centre():
    images = np.random.default_rng(0).uniform(size=(6, 12))  # 6 images of 3x4, 3 per row
    fig = image_grid(images, (3, 4), None, 3, "t", row_labels=["a", "b"])
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts] == ["a", "b"]
    assert [t.get_position()[1] for t in texts] == [1.0, 5.0]  # row r spans pixels 4r..4r+2
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), tile(images, (3, 4), 3))


def test_image_grid_refuses_a_label_count_unlike_the_rows():
    with pytest.raises(ValueError, match="one label per row: 2 rows of 3 images, got 3"):
        image_grid(np.zeros((6, 12)), (3, 4), None, 3, row_labels=range(3))
