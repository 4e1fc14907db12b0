//! Console adapter.
