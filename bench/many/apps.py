from django.apps import AppConfig


class ManyConfig(AppConfig):
    name = "bench.many"
    label = "bench_many"
    verbose_name = "Benchmark: empty job models"
