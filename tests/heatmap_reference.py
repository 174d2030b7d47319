"""Reference placement of feature-grid maps in the image, written
independently of the package (shared by the autograd-reference tests)."""
import torch
import torch.nn.functional as F


def to_image(grid: torch.Tensor, stride: int, img_shape) -> torch.Tensor:
    """Cell (i, j) covers pixels [i*s, (i+1)*s), bilinear between cell
    centres, zero heat beyond the grid; cropped to the unpadded input.

    Args:
        grid (Tensor): (H, W) map on the cell grid.
        stride (int): Pixels per cell.
        img_shape (tuple): (h, w) of the unpadded input.

    Returns:
        Tensor: (h, w).
    """
    up = F.interpolate(F.pad(grid, (1, 1, 1, 1))[None, None],
                       scale_factor=stride, mode='bilinear')
    h, w = img_shape
    return up[0, 0, stride:stride + h, stride:stride + w]
