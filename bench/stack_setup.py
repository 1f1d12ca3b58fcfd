"""What a benchmark ran on, from the settings: the stack mode, Spark's master (and cores.max on a
standalone cluster), Kafka's brokers and the topics' replicas. The environment chooses these
(``EVCHARGING_STACK_MODE`` …), not the benchmark, so each result says them."""

from __future__ import annotations


def stack_setup(settings) -> dict:
    on_cluster = settings.spark_master_url.startswith("spark://")
    return {"stack_mode": settings.stack_mode, "spark_master": settings.spark_master_url,
            "spark_cores_max": settings.spark_cores_max if on_cluster else None,
            "kafka_brokers": len(settings.kafka_brokers), "kafka_replicas": settings.kafka_replicas}


def describe(setup: dict) -> str:
    cores = f" (cores.max {setup['spark_cores_max']})" if setup["spark_cores_max"] else ""
    return (f"{setup['stack_mode']}: Spark {setup['spark_master']}{cores}, {setup['kafka_brokers']} Kafka "
            f"broker(s), topics replicated {setup['kafka_replicas']}×")
