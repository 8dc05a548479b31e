//! The compiled host index of one egress listener: exact hosts by hash, `*.suffix` wildcards
//! by suffix probes at label boundaries, `ns/*` by namespace key. Built once by
//! [`super::compile`], probed by the decision without allocating.

use rustc_hash::FxHashMap;

use crate::decision::RuleId;

/// A namespace selector with the namespace interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum NsKey {
    Any,
    Own,
    Named(u32),
}

/// Rules that name one host (or suffix), each with the namespace bucket it belongs to.
pub(super) type NsRules = Box<[(NsKey, RuleId)]>;

/// One direction (imports or exclusions) of one egress listener.
#[derive(Debug, Default)]
pub(super) struct Patterns {
    exact: FxHashMap<Box<[u8]>, NsRules>,
    /// Keyed by the suffix including its leading dot (`.example.com`).
    suffix: FxHashMap<Box<[u8]>, NsRules>,
    /// Bit n set: some suffix has n labels (n >= 63 sets bit 63).
    suffix_labels: u64,
    /// `ns/*` entries.
    all: FxHashMap<NsKey, RuleId>,
}

/// Which namespace bucket the destination falls in.
#[derive(Clone, Copy)]
pub(super) struct Bucket {
    pub(super) ns: Option<u32>,
    pub(super) own: bool,
}

impl Bucket {
    /// A destination whose namespace is unknown: only `*` entries select it.
    pub(super) const UNKNOWN: Bucket = Bucket {
        ns: None,
        own: false,
    };

    /// Whether `key` is the destination's own namespace bucket (not `*`).
    fn specific(self, key: NsKey) -> bool {
        match key {
            NsKey::Named(id) => Some(id) == self.ns,
            NsKey::Own => self.own,
            NsKey::Any => false,
        }
    }
}

impl Patterns {
    pub(super) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffix.is_empty() && self.all.is_empty()
    }

    /// Whether any rule here could select something inside the cluster whose namespace is
    /// not known: a namespace-wide entry (`~ns/*`, `~*/*`), any entry scoped to a namespace, or
    /// a host at or under the cluster domain (`domain_suffix` is `.<clusterDomain>`). Computed
    /// once per listener at compile time.
    pub(super) fn may_select_in_cluster(&self, domain_suffix: &[u8]) -> bool {
        let scoped = |rules: &NsRules| rules.iter().any(|(k, _)| *k != NsKey::Any);
        !self.all.is_empty()
            || self
                .exact
                .iter()
                .any(|(h, r)| scoped(r) || h.ends_with(domain_suffix))
            || self.suffix.iter().any(|(sfx, r)| {
                scoped(r) || sfx.ends_with(domain_suffix) || domain_suffix.ends_with(sfx)
            })
    }

    /// Best rule among those naming this host: the destination's own bucket beats `*`; rules
    /// are stored in rule order, so the first found is the earliest.
    pub(super) fn pick(rules: &[(NsKey, RuleId)], b: Bucket) -> Option<RuleId> {
        let mut any = None;
        for (key, rule) in rules {
            if b.specific(*key) {
                return Some(*rule);
            }
            if *key == NsKey::Any && any.is_none() {
                any = Some(*rule);
            }
        }
        any
    }

    /// The most specific rule selecting `host` for a destination in bucket `b`, by
    /// [`crate::pattern::Specificity`] (exact, then the longest wildcard suffix, then `ns/*`;
    /// the destination's own bucket before `*`), the earliest rule among equals. The probe order
    /// below IS that order; `tests/properties.rs` holds the two to each other.
    pub(super) fn find(&self, host: &[u8], b: Bucket) -> Option<RuleId> {
        if let Some(rules) = self.exact.get(host) {
            if let Some(r) = Self::pick(rules, b) {
                return Some(r);
            }
        }
        if self.suffix_labels != 0 {
            // Suffixes start at each '.', longest first; the label count of the suffix starting
            // at the i-th dot is (total labels - i - 1).
            let total = host.iter().filter(|&&c| c == b'.').count() + 1;
            let mut seen = 0usize;
            for (i, &c) in host.iter().enumerate() {
                if c != b'.' {
                    continue;
                }
                seen += 1;
                let labels = (total - seen).min(63);
                if self.suffix_labels & (1u64 << labels) == 0 {
                    continue;
                }
                if let Some(rules) = host.get(i..).and_then(|s| self.suffix.get(s)) {
                    if let Some(r) = Self::pick(rules, b) {
                        return Some(r);
                    }
                }
            }
        }
        if !self.all.is_empty() {
            // `ns/*` and `./*` are equally specific for a destination in the source's own
            // namespace: the earlier rule names it, as in `pick`.
            let own = if b.own {
                self.all.get(&NsKey::Own)
            } else {
                None
            };
            let named = b.ns.and_then(|id| self.all.get(&NsKey::Named(id)));
            let specific = match (named, own) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(r) = specific.or_else(|| self.all.get(&NsKey::Any)) {
                return Some(*r);
            }
        }
        None
    }
}

/// One egress listener, compiled.
#[derive(Debug, Default)]
pub(super) struct HostSet {
    pub(super) import: Patterns,
    pub(super) exclude: Patterns,
}

/// Accumulates one direction of a listener before it is frozen into [`Patterns`].
#[derive(Default)]
pub(super) struct Acc {
    pub(super) exact: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>,
    pub(super) suffix: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>,
    pub(super) all: FxHashMap<NsKey, RuleId>,
}

impl Acc {
    pub(super) fn finish(self) -> Patterns {
        let mut suffix_labels = 0u64;
        for s in self.suffix.keys() {
            let labels = s.iter().filter(|&&c| c == b'.').count().min(63);
            suffix_labels |= 1u64 << labels;
        }
        let boxed = |m: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>| {
            let mut out: FxHashMap<Box<[u8]>, NsRules> = FxHashMap::default();
            out.reserve(m.len());
            for (k, mut v) in m {
                v.dedup_by_key(|(key, _)| *key);
                out.insert(k, v.into_boxed_slice());
            }
            out
        };
        Patterns {
            exact: boxed(self.exact),
            suffix: boxed(self.suffix),
            suffix_labels,
            all: self.all,
        }
    }
}
