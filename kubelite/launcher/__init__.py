"""The one module above every component: it wires and supervises them (as k3s's server does).
Nothing below it imports it."""
