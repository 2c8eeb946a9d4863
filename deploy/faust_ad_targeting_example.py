"""Example Faust app: when a user's ``ads`` interests change, pick the best ads for them.

It registers ``streams.integrations.faust`` on a Faust app, so every batch of update notifications
from the unistate worker becomes one Redis read and one call of ``on_interests`` below, which
scores the exported model's ad vectors against each user's ``ads`` interests in one matrix
multiply (``InterestBatch.top_items``: max over the user's Q query vectors of the dot product;
the vectors are L2-normalised, so that is a cosine) and logs the top ads per user. The ads are
the items the model saw in the ``ads`` scenario during training (``item_index.json`` of the
artifact the worker serves, ``UNISTATE_MODEL_ARTIFACT_DIR``), so a feed item never tops the
ranking; pass ``candidates=[...]`` to ``top_items`` to restrict it to the ads on sale now.

Run it beside a worker (same ``UNISTATE_KAFKA_*``, ``UNISTATE_REDIS_*`` and
``UNISTATE_MODEL_ARTIFACT_DIR`` settings as the worker, read from the environment; see README.md,
Configuration), from the repository root::

    pip install 'faust-streaming>=0.15'   # or: pip install 'unistate[faust]'
    export UNISTATE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
    export UNISTATE_REDIS_URL=redis://127.0.0.1:6379/0
    export UNISTATE_MODEL_ARTIFACT_DIR=models/current
    PYTHONPATH=deploy faust -A faust_ad_targeting_example worker -l info
    # or, equivalently:  python deploy/faust_ad_targeting_example.py worker -l info

The app is a ``HeadlessApp``: Faust's web server never starts and no port is bound, although
``faust worker`` defaults to ``--with-web`` (with a plain ``faust.App``, pass ``--without-web``).
Point it at any broker and Redis a unistate worker publishes to (e.g. the stack of
``deploy/docker-compose.yml``) and watch for ``top ads`` log lines as events stream in. The Faust
consumer group is the app id, ``unistate-ad-targeting``: instances started with it share the
partitions of ``<prefix>updates``. Delivery is at-least-once; see docs/faust.md.
"""

from __future__ import annotations

import logging

from encoders.item_index import ItemIndex
from streams.app import redis_client
from streams.integrations.faust import HeadlessApp, InterestBatch, register_interest_agent
from streams.settings import KafkaSettings, ModelSettings, RedisSettings

__all__ = ["TOP_K", "app", "items", "on_interests"]

logger = logging.getLogger(__name__)

#: Ads logged per user.
TOP_K = 3

_kafka, _redis, _model = KafkaSettings(), RedisSettings(), ModelSettings()
#: The exported model's item vectors and ids, with the scenarios each item was seen in.
items = ItemIndex.load(_model.artifact_dir)

app = HeadlessApp(
    "unistate-ad-targeting",
    broker=[f"kafka://{host.strip()}" for host in _kafka.bootstrap_servers.split(",")],
    web_enabled=False,
    autodiscover=False,
    consumer_auto_offset_reset="latest",  # targeting reacts to new changes, not history
    topic_replication_factor=1,
)


async def on_interests(batch: InterestBatch) -> None:
    """Log the top ads of each user whose ``ads`` interests changed."""
    top = batch.top_items(items, k=TOP_K)
    for user_id, version, age_ms in zip(batch.user_ids, batch.versions, batch.age_ms, strict=True):
        ranked = top.ranked.get(user_id)
        if ranked:
            logger.info("top ads user_id=%s ads=%s version=%d age_ms=%d", user_id,
                        ",".join(f"{ad}:{score:.4f}" for ad, score in ranked), version, age_ms)
    if top.other_model:
        logger.warning("users with vectors of another model (not scored) count=%d model_version=%s",
                       len(top.other_model), items.model_version)


interests = register_interest_agent(
    app, _kafka.topic_prefix, redis_client(_redis), on_interests,
    scenario="ads", key_prefix=_redis.key_prefix, batch_size=200, batch_within_s=0.2,
)

if __name__ == "__main__":
    app.main()
