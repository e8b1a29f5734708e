"""Mixed-precision search: Optuna chooses which quantizable int8_inc nodes stay fp32, trading
physics distance against measured speed (``precision=int8_inc_search``, settings ``search.*``).
"""

from calo.search.runner import run_search
from calo.search.space import SearchSpace, Switch
from calo.search.summary import Summary, summarize

__all__ = ["SearchSpace", "Summary", "Switch", "run_search", "summarize"]
