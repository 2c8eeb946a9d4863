"""Example Faust app: when a user's ``ads`` interests change, pick the best of a few ads for them.

It registers ``streams.integrations.faust`` on a Faust app, so every batch of update notifications
from the unistate worker becomes one Redis read and one call of ``on_interests`` below, which
scores a handful of ad vectors against each user's ``ads`` interests (max over the user's Q
query vectors of the dot product; the vectors are L2-normalised, so that is a cosine) and logs
the top ad per user. The ad vectors here are random stand-ins of the right dimension; a real app
encodes its ad catalogue with the same model (``encoders``) and keeps those vectors instead.

Run it beside a worker (same ``UNISTATE_KAFKA_*`` and ``UNISTATE_REDIS_*`` settings as the
worker, read from the environment; see README.md, Configuration), from the repository root::

    pip install 'faust-streaming>=0.15'   # or: pip install 'unistate[faust]'
    export UNISTATE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
    export UNISTATE_REDIS_URL=redis://127.0.0.1:6379/0
    PYTHONPATH=deploy faust -A faust_ad_targeting_example worker -l info
    # or, equivalently:  python deploy/faust_ad_targeting_example.py worker -l info

Point it at any broker and Redis a unistate worker publishes to (e.g. the stack of
``deploy/docker-compose.yml``) and watch for ``top ad`` log lines as events stream in. The Faust
consumer group is the app id, ``unistate-ad-targeting``: instances started with it share the
partitions of ``<prefix>updates``. Delivery is at-least-once; see docs/faust.md.
"""

from __future__ import annotations

import logging
import zlib

import faust
import numpy as np

from streams.app import redis_client
from streams.integrations.faust import InterestBatch, register_interest_agent
from streams.settings import KafkaSettings, RedisSettings

__all__ = ["AD_IDS", "app", "score_ads"]

logger = logging.getLogger(__name__)

#: The handful of ads this example targets (stand-ins for an ad catalogue).
AD_IDS = ("ad_coffee_grinder", "ad_running_shoes", "ad_city_breaks", "ad_board_games",
          "ad_yoga_mat")

_kafka, _redis = KafkaSettings(), RedisSettings()

app = faust.App(
    "unistate-ad-targeting",
    broker=[f"kafka://{host.strip()}" for host in _kafka.bootstrap_servers.split(",")],
    web_enabled=False,
    autodiscover=False,
    consumer_auto_offset_reset="latest",  # targeting reacts to new changes, not history
    topic_replication_factor=1,
)


def ad_vectors(dim: int) -> np.ndarray:
    """``[A, dim]`` float32 unit vectors, one per ad in ``AD_IDS``, stable across runs."""
    rows = [np.random.default_rng(zlib.crc32(ad.encode())).standard_normal(dim) for ad in AD_IDS]
    ads = np.asarray(rows, dtype=np.float32)
    return ads / np.linalg.norm(ads, axis=1, keepdims=True)


def score_ads(user_vectors: np.ndarray, ads: np.ndarray) -> np.ndarray:
    """``[N, A]`` scores: for each user and ad, the best dot product over the user's Q vectors."""
    return np.einsum("nqd,ad->nqa", user_vectors, ads).max(axis=1)


async def on_interests(batch: InterestBatch) -> None:
    """Log the top ad of each user whose ``ads`` interests changed."""
    scores = score_ads(batch.vectors, ad_vectors(batch.vectors.shape[-1]))
    best = scores.argmax(axis=1)
    for i, user_id in enumerate(batch.user_ids):
        logger.info("top ad user_id=%s ad_id=%s score=%.4f version=%d age_ms=%d",
                    user_id, AD_IDS[best[i]], scores[i, best[i]], batch.versions[i],
                    batch.age_ms[i])


interests = register_interest_agent(
    app, _kafka.topic_prefix, redis_client(_redis), on_interests,
    scenario="ads", key_prefix=_redis.key_prefix, batch_size=200, batch_within_s=0.2,
)

if __name__ == "__main__":
    app.main()
