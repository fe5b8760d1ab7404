"""The intake pipeline: a webhook request's sender, body, secret and fields, checked in that order
(``alerts``, ``protection``), then journaled (``pipeline``); what is refused is logged (``refusals``)."""
