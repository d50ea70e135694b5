"""The Locust integration: one run's state, the user class, and the path of every call.

:class:`~harness.runtime.state.Harness` carries a run's state (options, transport, calls in
flight, samples, features); :class:`~harness.runtime.user.AnthropicUser` is what scenarios
subclass; :mod:`~harness.runtime.features` is how the features above this layer install
themselves into a run when the plugin asks.
"""
