//! `slipway serve`: the unattended daemon (being built).
