"""Stand-ins for the outside services Sigrelay talks to, for running it without them.

Part of the operations layer (like `services.demo` and `services.bench`): a stand-in
may use a service's own simulation pieces (the MetaApi stand-in trades on the
execution service's paper book), but no service imports a stand-in.
"""
