"""Environments: a functional POMDP API (book 16.2), a JAX-native 2-D task suite with scripted
multimodal experts (16.3.3, 18.8.1), a renderer, and a gymnasium wrapper.

Modules are imported explicitly (`from core.envs import registry`); `registry.make(task)` is the
usual entry point.
"""
