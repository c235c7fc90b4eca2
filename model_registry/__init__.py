"""The model registry both training (writer) and serving (reader) use; see model_registry.registry."""

from model_registry.registry import (
    ALIASES,
    AliasConflict,
    GateRefused,
    Registry,
    RegistryError,
    RegistryInputError,
    card_summary,
    default_root,
)

__all__ = [
    "ALIASES",
    "AliasConflict",
    "GateRefused",
    "Registry",
    "RegistryError",
    "RegistryInputError",
    "card_summary",
    "default_root",
]
