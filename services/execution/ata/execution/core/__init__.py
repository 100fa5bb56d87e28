"""Pure execution domain: order state machine, broker port, slippage, slicing, routing, reconciliation."""
