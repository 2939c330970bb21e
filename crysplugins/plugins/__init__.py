"""Built-in plugins.  Each module implements ``register_predictors`` and/or ``register_refiners`` exactly as
a third-party plugin would; the host registers the modules listed in :data:`BUILTINS` under these names
(``CRYSPLUGINS_PLUGINS`` and ``only`` select among them by the same names)."""

#: The built-in plugin modules, in the order the host loads them (a new one is added here).
BUILTINS: tuple[str, ...] = (
    "cctbx_dm",
    "charge_flipping",
    "fragment_phasing",
    "patterson_density",
    "refiners",
    "solvent_content",
    "solvent_mask",
    "solvent_mask_local_variance",
)
