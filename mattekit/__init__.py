"""mattekit: image matting from the command line and from Python.

The API in one line: ``alpha = mattekit.predict(image, trimap, model="shared-sampling")``.
"""

from mattekit.errors import MattekitError
from mattekit.predictor import load_input, load_model, predict

__version__ = "0.1.0"

__all__ = ["MattekitError", "__version__", "load_input", "load_model", "predict"]
