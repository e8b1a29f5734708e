"""Mixed-precision search: Optuna chooses which quantizable int8_inc nodes stay fp32, trading
physics distance against measured speed. ``python -m calo.search`` (settings ``search.*``,
:mod:`calo.search.settings`); the flow is :mod:`calo.search.pipeline`.
"""
