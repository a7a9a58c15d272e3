"""The bottom floor: small helpers every other layer may use and that import nothing above.

``numeric`` (the one finite-number check), ``paths`` (slugs, trial folders, the store file,
the default report page), ``version`` (read from the package metadata), ``registry`` (the
plug-in registries of designers and procedures), ``interrupts`` (stops held while a store
transaction is open), ``processes`` (is a pid alive; die with the parent) and ``formatting``
(numbers for people, strict JSON, one error line).
"""
