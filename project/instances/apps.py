from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "project.instances"
    label = "instances"
    verbose_name = "Instances (example domain)"
