//! Placeholder for the router.
