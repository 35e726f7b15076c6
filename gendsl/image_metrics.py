"""Quality of sampled images without downloads: classifier agreement, a kernel feature distance
and nearest-neighbour distances to the training images.

Everything is measured against the run's own data, with no pretrained network:

- **Classifier** (:func:`train_classifier`): for labelled images, a small convolutional
  classifier (:class:`gendsl.nn.conv.ConvEncoder`, channels 16 and 32, a 64-wide head) trained by
  Adam (60 passes, 400 to 1 500 steps, cosine decay) on the training split only; its accuracy on
  the held-out images is reported beside every number it produces, since agreement cannot mean
  more than that accuracy.
- **Classifier agreement** (:func:`classifier_agreement`): the share of samples drawn with label
  ``k`` that the classifier assigns to ``k``.
- **Feature distance** (:func:`kernel_distance`): the squared maximum mean discrepancy with KID's
  kernel ``k(a, b) = (a.b / d + 1)^3`` (Bińkowski et al. 2018) on the classifier's ``d`` learned
  features (on the pixels when the images have no labels), between the samples and the held-out
  images. Its noise floor is the same distance for as many real training images the classifier
  did not see (the training split is halved: one half trains the classifier, the other is the
  floor's reference), both the plain V-statistic, whose floor is positive, and their ratio (1 is
  as good as real images). ``kid`` is the usual unbiased estimate of the samples' distance (0 for
  a perfect model).
- **Memorisation** (:func:`nearest_neighbours`): each sample's and each held-out image's pixel
  distance to its nearest training image. ``memorisation_ratio`` is the samples' median over the
  held-out images' median (well below 1: samples sit closer to training images than new real
  images do); ``copies_share`` is the share of samples within a tenth of that held-out median of a
  training image (near copies), beside ``heldout_copies_share``, the same share of the held-out
  images (what the data's own near-duplicates give).

Sizes are bounded (at most :data:`MAX_IMAGES` samples and held-out images, :data:`MAX_TRAIN`
training images) and reported.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.nn.conv import ConvEncoder

__all__ = ["Classifier", "train_classifier", "classifier_agreement", "kernel_distance", "kid",
           "nearest_neighbours", "ImageScorer", "classifier_steps", "image_scorer", "image_metrics", "MAX_IMAGES", "MAX_TRAIN", "COPY_DISTANCE"]

#: at most this many samples and held-out images are scored
MAX_IMAGES = 2000
#: at most this many training images train the classifier and serve as neighbours
MAX_TRAIN = 10000
#: passes over its training images the classifier makes, and the least and most steps that takes
CLASSIFIER_EPOCHS, CLASSIFIER_STEPS = 60, (400, 1500)
#: a sample this near a training image, as a share of the held-out images' median distance, is a copy
COPY_DISTANCE = 0.1


class Classifier(NamedTuple):
    """A trained image classifier and what it scored on the held-out images."""

    network: ConvEncoder
    classes: int
    heldout_accuracy: float

    def logits(self, images: np.ndarray) -> np.ndarray:
        """``(n, classes)`` logits of images ``(n, C, H, W)``."""
        return np.asarray(_batched(jax.vmap(self.network), images))

    def features(self, images: np.ndarray) -> np.ndarray:
        """``(n, 64)`` learned features of images ``(n, C, H, W)`` (the head's last hidden layer)."""
        return np.asarray(_batched(jax.vmap(self.network.features), images))


def _batched(fn, images: np.ndarray, size: int = 512) -> jax.Array:
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    return jnp.concatenate([fn(jnp.asarray(flat[i:i + size])) for i in range(0, len(flat), size)])


def classifier_steps(n: int, batch_size: int = 128) -> int:
    """Steps of the classifier on ``n`` images: :data:`CLASSIFIER_EPOCHS` passes, within
    :data:`CLASSIFIER_STEPS`. (A fixed 400 left 2 700 16x16 shapes at 0.88 held-out accuracy, 1 500
    at 0.95; agreement cannot exceed it.)"""
    lo, hi = CLASSIFIER_STEPS
    return int(min(hi, max(lo, CLASSIFIER_EPOCHS * n // batch_size)))


def train_classifier(images: np.ndarray, labels: np.ndarray, heldout_images: np.ndarray, heldout_labels: np.ndarray,
                     key: jax.Array, *, classes: int, steps: int | None = None, batch_size: int = 128,
                     learning_rate: float = 3e-3) -> Classifier:
    """A :class:`ConvEncoder` classifier of ``labels`` ``(n,)`` in ``0..classes-1`` given ``images``
    ``(n, C, H, W)``, trained by Adam on cross-entropy with a cosine-decayed learning rate for
    ``steps`` (default :func:`classifier_steps`); scored on the held-out pair."""
    images = np.asarray(images, np.float32)[:MAX_TRAIN]
    labels = np.asarray(labels).reshape(-1)[:MAX_TRAIN].astype(np.int32)
    steps = classifier_steps(len(labels), batch_size) if steps is None else steps
    k_net, k_batches = jax.random.split(key)
    size = int(np.prod(images.shape[1:]))
    net = ConvEncoder(images.shape[1:], size, classes, (16, 32), (64,), key=k_net)
    params, static = eqx.partition(net, eqx.is_array)
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    flat, y = jnp.asarray(images.reshape(len(images), -1)), jnp.asarray(labels)

    def loss(p, idx):
        logits = jax.vmap(eqx.combine(p, static))(flat[idx])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

    @jax.jit
    def train(p, keys):
        def step(carry, k):
            p, opt_state = carry
            idx = jax.random.randint(k, (min(batch_size, len(labels)),), 0, len(labels))
            updates, opt_state = optimizer.update(jax.grad(loss)(p, idx), opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), None

        return jax.lax.scan(step, (p, optimizer.init(p)), keys)[0][0]

    net = eqx.combine(train(params, jax.random.split(k_batches, steps)), static)
    trained = Classifier(net, classes, float("nan"))
    predicted = np.argmax(trained.logits(heldout_images), axis=1)
    accuracy = float(np.mean(predicted == np.asarray(heldout_labels).reshape(-1))) if len(predicted) else float("nan")
    return trained._replace(heldout_accuracy=accuracy)


def classifier_agreement(classifier: Classifier, samples: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``samples`` ``(n, C, H, W)`` that ``classifier`` assigns to their ``labels`` ``(n,)``."""
    predicted = np.argmax(classifier.logits(samples), axis=1)
    return float(np.mean(predicted == np.asarray(labels).reshape(-1)))


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The V-statistic of the squared MMD between feature sets ``a`` ``(n, d)`` and ``b`` ``(m, d)``
    with KID's cubic polynomial kernel (positive even for two draws of one distribution)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(_kernel(a, a).mean() + _kernel(b, b).mean() - 2.0 * _kernel(a, b).mean())


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """The kernel inception distance's unbiased estimate of the squared MMD between ``a`` ``(n, d)``
    and ``b`` ``(m, d)`` (its expectation is 0 when both come from one distribution)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    kaa, kbb = _kernel(a, a), _kernel(b, b)
    n, m = len(a), len(b)
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2.0 * _kernel(a, b).mean())


def _nearest(points: np.ndarray, reference: np.ndarray, block: int = 256) -> np.ndarray:
    """``(n,)`` Euclidean distance of each row of ``points`` ``(n, D)`` to its nearest row of ``reference``."""
    ref = jnp.asarray(reference, jnp.float32)
    ref_sq = jnp.sum(ref ** 2, axis=1)

    @jax.jit
    def one_block(p):
        d2 = jnp.sum(p ** 2, axis=1)[:, None] + ref_sq[None, :] - 2.0 * p @ ref.T
        return jnp.sqrt(jnp.maximum(jnp.min(d2, axis=1), 0.0))

    pts = np.asarray(points, np.float32)
    return np.concatenate([np.asarray(one_block(jnp.asarray(pts[i:i + block]))) for i in range(0, len(pts), block)])


def nearest_neighbours(samples: np.ndarray, train: np.ndarray, heldout: np.ndarray) -> dict:
    """Pixel distances of samples and held-out images (``(n, ...)``) to their nearest training image
    (``(m, ...)``): medians, ``memorisation_ratio`` and the copies' shares (see the module)."""
    flat = [np.asarray(a, np.float32).reshape(len(a), -1) for a in (samples, train, heldout)]
    to_train, heldout_to_train = _nearest(flat[0], flat[1]), _nearest(flat[2], flat[1])
    median, heldout_median = float(np.median(to_train)), float(np.median(heldout_to_train))
    near = COPY_DISTANCE * heldout_median
    return {"nn_distance_median": median, "heldout_nn_distance_median": heldout_median,
            "memorisation_ratio": median / heldout_median if heldout_median > 0 else None,
            "copies_share": float(np.mean(to_train <= near)), "heldout_copies_share": float(np.mean(heldout_to_train <= near))}


class ImageScorer(NamedTuple):
    """What scores samples against one data set: the classifier (None without labels), the
    held-out images and their features, the training images, and the noise floor."""

    classifier: Classifier | None
    train: np.ndarray
    heldout: np.ndarray
    heldout_features: np.ndarray
    floor: float
    floor_n: int

    def embed(self, images: np.ndarray) -> np.ndarray:
        """``(n, d)`` features of images ``(n, C, H, W)``: the classifier's, else the pixels."""
        if self.classifier is not None:
            return self.classifier.features(images)
        return np.asarray(images, np.float64).reshape(len(images), -1)

    def __call__(self, samples: np.ndarray, labels: np.ndarray | None = None) -> dict:
        """Every metric of the module for ``samples`` ``(n, C, H, W)`` drawn with ``labels`` ``(n,)``."""
        samples = np.asarray(samples)[:MAX_IMAGES]
        out: dict = {"n_samples": int(len(samples)), "n_heldout": int(len(self.heldout)), "n_train": int(len(self.train)),
                     "n_floor_reference": self.floor_n,
                     "feature_space": "classifier" if self.classifier is not None else "pixels"}
        if self.classifier is not None:
            out["classifier_heldout_accuracy"] = self.classifier.heldout_accuracy
            if labels is not None:
                out["classifier_agreement"] = classifier_agreement(self.classifier, samples,
                                                                   np.asarray(labels).reshape(-1)[:MAX_IMAGES])
        if len(samples) >= 2 and self.floor_n >= 2:
            drawn = self.embed(samples)
            value = kernel_distance(drawn, self.heldout_features)
            out.update(feature_distance=value, feature_distance_noise_floor=self.floor,
                       feature_distance_over_floor=value / self.floor if self.floor > 0 else None,
                       kid=kid(drawn, self.heldout_features))
        out.update(nearest_neighbours(samples, self.train, self.heldout))
        return out


def image_scorer(train: np.ndarray, heldout: np.ndarray, key: jax.Array, *, train_labels: np.ndarray | None = None,
                 heldout_labels: np.ndarray | None = None, classes: int | None = None) -> ImageScorer:
    """An :class:`ImageScorer` for ``train`` and ``heldout`` images (``(n, C, H, W)`` on one scale):
    with labels (``(n,)`` each) and ``classes`` a classifier trained on half the training images,
    the other half the noise floor's reference."""
    heldout, train = np.asarray(heldout)[:MAX_IMAGES], np.asarray(train)[:MAX_TRAIN]
    order = np.random.default_rng(0).permutation(len(train))
    fits, reference = order[:len(train) // 2], order[len(train) // 2:][:len(heldout)]
    classifier = None
    if train_labels is not None and heldout_labels is not None and classes:
        classifier = train_classifier(train[fits], np.asarray(train_labels).reshape(-1)[:MAX_TRAIN][fits], heldout,
                                      np.asarray(heldout_labels).reshape(-1)[:MAX_IMAGES], key, classes=classes)
    scorer = ImageScorer(classifier, train, heldout, np.zeros((0, 0)), float("nan"), int(len(reference)))
    features = scorer.embed(heldout)
    floor = kernel_distance(scorer.embed(train[reference]), features) if len(reference) >= 2 and len(heldout) >= 2 \
        else float("nan")
    return scorer._replace(heldout_features=features, floor=floor)


def image_metrics(samples: np.ndarray, train: np.ndarray, heldout: np.ndarray, key: jax.Array, *,
                  sample_labels: np.ndarray | None = None, train_labels: np.ndarray | None = None,
                  heldout_labels: np.ndarray | None = None, classes: int | None = None) -> dict:
    """metrics.json's ``images`` entry: :func:`image_scorer` of the data, applied to ``samples``
    ``(n, C, H, W)`` drawn with ``sample_labels`` ``(n,)``."""
    scorer = image_scorer(train, heldout, key, train_labels=train_labels, heldout_labels=heldout_labels, classes=classes)
    return scorer(samples, sample_labels)
