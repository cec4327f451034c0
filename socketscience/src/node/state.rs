//! Handler state: the values given to
//! [`NodeBuilder::state`](crate::NodeBuilder::state), one per type, that
//! handlers reach with [`Context::state`](crate::Context::state).

use std::any::{Any, TypeId};

/// A node's state values, one per type; fixed at start. A node holds a
/// handful: a list scanned by type id beats a map.
#[derive(Default)]
pub(crate) struct State(Vec<(TypeId, &'static str, Box<dyn Any + Send + Sync>)>);

impl State {
    /// Adds `value`, replacing an earlier value of its type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let entry = (id, std::any::type_name::<T>(), Box::new(value) as _);
        match self.0.iter_mut().find(|(t, ..)| *t == id) {
            Some(slot) => *slot = entry,
            None => self.0.push(entry),
        }
    }

    /// The value of type `T`, if the node was given one.
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(t, ..)| *t == id)
            .and_then(|(_, _, value)| value.downcast_ref())
    }

    /// The types held, for `Debug`.
    pub(crate) fn type_names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(_, name, _)| *name).collect()
    }
}
