"""Mixed-precision search: Optuna chooses which quantizable int8 nodes (of int8_inc or int8_ov)
stay fp32, trading physics distance against measured speed. ``python -m calo.search``
(settings ``search.*``, :mod:`calo.search.settings`); the flow is :mod:`calo.search.pipeline`.
"""
