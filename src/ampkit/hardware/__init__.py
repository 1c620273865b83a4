"""Device facts: what this machine supports, measured, and what to use."""

from .capabilities import DeviceCaps, device_capabilities

__all__ = ["DeviceCaps", "device_capabilities"]
