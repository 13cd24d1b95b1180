"""Pictures of samples and training curves (PNG via Pillow and matplotlib)."""
from .grids import image_grid, save_image_grid, save_samples_figure, scatter_samples
from .curves import plot_curves

__all__ = ["image_grid", "save_image_grid", "save_samples_figure", "scatter_samples", "plot_curves"]
