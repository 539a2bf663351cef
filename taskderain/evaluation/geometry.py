"""The evaluation geometry: ultralytics' validator letterbox, image by image (pure functions).

ultralytics' ``DetectionValidator`` (``YOLO.val()``) does not letterbox each image on its own: its
``YOLODataset`` in ``rect`` mode

1. resizes every image so its longest side is ``imgsz`` (``BaseDataset.load_image``: sides
   ``min(ceil(side * r), imgsz)``, bilinear), then
2. sorts the images by aspect ratio (h / w), cuts them into batches of ``batch`` and gives every
   image of a batch one canvas, ``ceil(shape * imgsz / stride + pad) * stride`` with ``pad = 0.5``
   (``BaseDataset.set_rectangle``): the resized image is centred on it with grey (114) borders.

Boxes come back with ``scale_boxes(canvas, boxes, original shape, ratio_pad)``, the resize gain
per axis and the border. :func:`plan_geometries` reproduces both steps for a list of image
shapes, so a derainer can be put between the resize and the border and the detector still sees,
pixel for pixel, what ultralytics' validator feeds it (the oracle test compares the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..data.letterbox import LetterboxParams, letterbox_image, letterbox_params

Shape = Tuple[int, int]


def validator_resized_shape(shape: Shape, imgsz: int) -> Shape:
    """(h, w) an (H, W) image has after ultralytics' validator load (longest side ``imgsz``, ceil)."""
    h0, w0 = int(shape[0]), int(shape[1])
    r = imgsz / max(h0, w0)
    if r == 1:
        return h0, w0
    return min(math.ceil(h0 * r), imgsz), min(math.ceil(w0 * r), imgsz)


def validator_canvases(shapes: Sequence[Shape], imgsz: int, batch: int = 16, stride: int = 32,
                       pad: float = 0.5) -> List[Shape]:
    """The (H, W) canvas of every image (in the order given) under ultralytics' rect batching.

    ``shapes`` are the original (H, W) of the images in ultralytics' dataset order (sorted paths).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not shapes:
        return []
    s = np.array([[int(h), int(w)] for h, w in shapes])
    ar = s[:, 0] / s[:, 1]
    order = ar.argsort()  # numpy's default sort, as set_rectangle: ties resolve the same way
    bi = np.floor(np.arange(len(shapes)) / batch).astype(int)
    sorted_ar = ar[order]
    rel = [[1.0, 1.0]] * (bi[-1] + 1)
    for i in range(bi[-1] + 1):
        ari = sorted_ar[bi == i]
        mini, maxi = ari.min(), ari.max()
        if maxi < 1:
            rel[i] = [maxi, 1]
        elif mini > 1:
            rel[i] = [1, 1 / mini]
    batch_shapes = np.ceil(np.array(rel) * imgsz / stride + pad).astype(int) * stride
    canvases: List[Shape] = [(0, 0)] * len(shapes)
    for position, index in enumerate(order):
        h, w = batch_shapes[bi[position]]
        canvases[index] = (int(h), int(w))
    return canvases


@dataclass(frozen=True)
class ValidatorGeometry:
    """One image's way through the validator geometry: resize, then a border to its canvas.

    Attributes:
        orig_shape: (H, W) of the original image (EXIF orientation applied).
        resized: (h, w) after the validator's resize: what the derainer sees and PSNR scores.
        border: the letterbox of the resized image onto its canvas (``border.new_shape``).
    """

    orig_shape: Shape
    resized: Shape
    border: LetterboxParams

    @classmethod
    def plan(cls, shape: Shape, imgsz: int, canvas: Shape) -> "ValidatorGeometry":
        resized = validator_resized_shape(shape, imgsz)
        return cls((int(shape[0]), int(shape[1])), resized,
                   letterbox_params(resized, canvas, scaleup=False, auto=False))

    @property
    def canvas(self) -> Shape:
        return self.border.new_shape

    @property
    def ratio_pad(self) -> Tuple[Tuple[float, float], Tuple[int, int]]:
        """ultralytics' ``ratio_pad``: ((gain_h, gain_w) original → canvas, (pad_left, pad_top))."""
        r = self.border.ratio
        return ((self.resized[0] / self.orig_shape[0] * r, self.resized[1] / self.orig_shape[1] * r),
                (self.border.left, self.border.top))

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Original (H, W, C) image → the resized (h, w, C) content (bilinear, as the validator)."""
        if image.shape[:2] != self.orig_shape:
            raise ValueError(f"image of shape {image.shape[:2]} given to the geometry of a {self.orig_shape} image")
        if image.shape[:2] == self.resized:
            return image
        return cv2.resize(image, self.resized[::-1], interpolation=cv2.INTER_LINEAR)

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) class ids → (h, w) (nearest neighbour)."""
        if mask.shape[:2] == self.resized:
            return mask
        return cv2.resize(mask, self.resized[::-1], interpolation=cv2.INTER_NEAREST)

    def pad(self, content: np.ndarray) -> np.ndarray:
        """The resized (h, w, 3) uint8 content on its canvas (grey 114 border): the detector's input."""
        return letterbox_image(content, self.border)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in canvas pixels → original image pixels, clipped (ultralytics' ``scale_boxes``)."""
        (gain_h, gain_w), (left, top) = self.ratio_pad
        out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        out[:, [0, 2]] = ((out[:, [0, 2]] - left) / gain_w).clip(0, self.orig_shape[1])
        out[:, [1, 3]] = ((out[:, [1, 3]] - top) / gain_h).clip(0, self.orig_shape[0])
        return out

    def to_resized(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in original pixels → pixels of the resized content (for drawing)."""
        out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        out[:, [0, 2]] *= self.resized[1] / self.orig_shape[1]
        out[:, [1, 3]] *= self.resized[0] / self.orig_shape[0]
        return out

    def key(self) -> Dict[str, Any]:
        """What a cached detection depends on."""
        b = self.border
        return {"resized": list(self.resized), "canvas": list(self.canvas), "border": [b.top, b.left], "ratio": b.ratio}


def plan_geometries(shapes: Sequence[Shape], imgsz: int, batch: int = 16, stride: int = 32,
                    pad: float = 0.5) -> List[ValidatorGeometry]:
    """:class:`ValidatorGeometry` of every image (original (H, W) ``shapes`` in dataset order)."""
    canvases = validator_canvases(shapes, imgsz, batch, stride, pad)
    return [ValidatorGeometry.plan(shape, imgsz, canvas) for shape, canvas in zip(shapes, canvases)]


def image_shape(path: Any) -> Shape:
    """(H, W) of an image file from its header, EXIF orientation applied (ultralytics' ``exif_size``)."""
    from PIL import Image
    from ultralytics.data.utils import exif_size

    with Image.open(path) as im:
        w, h = exif_size(im)
    return int(h), int(w)
