PYTHON ?= python
export PYTHON

.PHONY: setup demo test real-model

setup:
	@bash tools/setup_env.sh

# Main job on the embedded default: explain the bundled synthetic image with the
# bundled tiny FCOS checkpoint; pictures go to outputs/demo/.
demo: setup
	$(PYTHON) tools/demo.py --out-dir outputs/demo

test: setup
	$(PYTHON) -m pytest tests -q -p no:cacheprovider

# The real COCO detector (TF model zoo SSD-MobileNetV2, converted) and real
# photos / pedestrian-video frames, cached in data/real_model/ (idempotent).
real-model: setup
	$(PYTHON) tools/fetch_real_model.py
