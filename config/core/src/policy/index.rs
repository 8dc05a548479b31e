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
    /// Not a namespace: in a listener's exact-host map ([`HostSet`]), the entry that separates
    /// a host's exclusions (before it) from its imports (after it). Never a key of `all`, never
    /// a bucket's nor `*`, so [`Patterns::pick`] passes over it.
    Split,
}

/// Rules that name one host (or suffix), each with the namespace bucket it belongs to.
pub(super) type NsRules = Box<[(NsKey, RuleId)]>;

/// [`NsRules`] borrowed.
type Rules<'a> = &'a [(NsKey, RuleId)];

/// One direction (imports or exclusions) of one egress listener. Its exact hosts live in the
/// listener's one map ([`HostSet`]), shared with the other direction.
#[derive(Debug, Default)]
pub(super) struct Patterns {
    /// How many exact hosts this direction names.
    exact: usize,
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
            NsKey::Any | NsKey::Split => false,
        }
    }
}

impl Patterns {
    pub(super) fn is_empty(&self) -> bool {
        self.exact == 0 && self.suffix.is_empty() && self.all.is_empty()
    }

    /// Whether any rule here could select something inside the cluster whose namespace is
    /// not known: a namespace-wide entry (`~ns/*`, `~*/*`), any entry scoped to a namespace, or
    /// a host at or under the cluster domain (`domain_suffix` is `.<clusterDomain>`). Computed
    /// once per listener at compile time.
    fn may_select_in_cluster<'a>(
        &self,
        mut exact: impl Iterator<Item = (&'a [u8], &'a [(NsKey, RuleId)])>,
        domain_suffix: &[u8],
    ) -> bool {
        let scoped = |rules: &[(NsKey, RuleId)]| rules.iter().any(|(k, _)| *k != NsKey::Any);
        !self.all.is_empty()
            || exact.any(|(h, r)| scoped(r) || h.ends_with(domain_suffix))
            || self.suffix.iter().any(|(sfx, r)| {
                scoped(r) || sfx.ends_with(domain_suffix) || domain_suffix.ends_with(sfx)
            })
    }

    /// Best rule among those naming this host: the destination's own bucket beats `*`; rules
    /// are stored in rule order, so the first found is the earliest.
    fn pick(rules: &[(NsKey, RuleId)], b: Bucket) -> Option<RuleId> {
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
    /// `exact` is this direction's rules naming `host` exactly, from the listener's one probe.
    fn find(&self, exact: &[(NsKey, RuleId)], host: &[u8], b: Bucket) -> Option<RuleId> {
        if let Some(r) = Self::pick(exact, b) {
            return Some(r);
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

/// A host's rules in a listener's exact-host map: its exclusions, then [`NsKey::Split`] and its
/// imports; a host that no exclusion names holds its imports alone. (One value type with the
/// suffix maps: the shipped .wasm carries one copy of the map's code, not two.)
fn split(rules: &[(NsKey, RuleId)]) -> (Rules<'_>, Rules<'_>) {
    match rules.iter().position(|(k, _)| *k == NsKey::Split) {
        Some(i) => (
            rules.get(..i).unwrap_or(&[]),
            rules.get(i + 1..).unwrap_or(&[]),
        ),
        None => (&[], rules),
    }
}

/// What a listener says of a host: an exclusion wins, then an import.
#[derive(Clone, Copy)]
pub(super) enum Found {
    Excluded(RuleId),
    Imported(RuleId),
    Neither,
}

/// One egress listener, compiled.
#[derive(Debug, Default)]
pub(super) struct HostSet {
    /// The exact hosts of both directions in one map, so that a decision hashes and probes
    /// the host once for the exclusions and the imports.
    exact: FxHashMap<Box<[u8]>, NsRules>,
    import: Patterns,
    exclude: Patterns,
}

impl HostSet {
    pub(super) fn new(import: Acc, exclude: Acc) -> HostSet {
        let mut exact: FxHashMap<Box<[u8]>, NsRules> = FxHashMap::default();
        exact.reserve(import.exact.len() + exclude.exact.len());
        let (import, imports) = import.finish();
        let (exclude, excludes) = exclude.finish();
        // Plain loops: iterator adapters here cost the shipped .wasm more than they read better.
        for (host, rules) in imports {
            exact.insert(host, rules.into_boxed_slice());
        }
        for (host, mut rules) in excludes {
            rules.push((NsKey::Split, RuleId(0)));
            if let Some(im) = exact.get(&host) {
                rules.extend_from_slice(im);
            }
            exact.insert(host, rules.into_boxed_slice());
        }
        HostSet {
            exact,
            import,
            exclude,
        }
    }

    /// The exclusion, else the import, that selects `host` for a destination in bucket `b`
    /// ([`Patterns::find`] of each direction, the exact probe shared).
    pub(super) fn find(&self, host: &[u8], b: Bucket) -> Found {
        let (ex, im) = self
            .exact
            .get(host)
            .map_or((&[][..], &[][..]), |r| split(r));
        if !self.exclude.is_empty() {
            if let Some(rule) = self.exclude.find(ex, host, b) {
                return Found::Excluded(rule);
            }
        }
        match self.import.find(im, host, b) {
            Some(rule) => Found::Imported(rule),
            None => Found::Neither,
        }
    }

    /// The exclusion that selects `host` for a destination in bucket `b`, if any.
    pub(super) fn find_exclusion(&self, host: &[u8], b: Bucket) -> Option<RuleId> {
        if self.exclude.is_empty() {
            return None;
        }
        let (ex, _) = self
            .exact
            .get(host)
            .map_or((&[][..], &[][..]), |r| split(r));
        self.exclude.find(ex, host, b)
    }

    /// [`Patterns::may_select_in_cluster`] of the exclusions.
    pub(super) fn excludes_may_select_in_cluster(&self, domain_suffix: &[u8]) -> bool {
        let exact = self
            .exact
            .iter()
            .map(|(h, r)| (&**h, split(r).0))
            .filter(|(_, r)| !r.is_empty());
        self.exclude.may_select_in_cluster(exact, domain_suffix)
    }
}

/// Exact hosts and their rules, while a listener is being built.
type ExactAcc = FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>;

/// Accumulates one direction of a listener before it is frozen into [`Patterns`].
#[derive(Default)]
pub(super) struct Acc {
    pub(super) exact: ExactAcc,
    pub(super) suffix: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>,
    pub(super) all: FxHashMap<NsKey, RuleId>,
}

impl Acc {
    /// The direction's patterns, and its exact hosts (rules in rule order, one per bucket) for
    /// [`HostSet::new`] to merge.
    fn finish(self) -> (Patterns, ExactAcc) {
        let mut suffix_labels = 0u64;
        for s in self.suffix.keys() {
            let labels = s.iter().filter(|&&c| c == b'.').count().min(63);
            suffix_labels |= 1u64 << labels;
        }
        let mut exact = self.exact;
        for v in exact.values_mut() {
            v.dedup_by_key(|(key, _)| *key);
        }
        let mut suffix: FxHashMap<Box<[u8]>, NsRules> = FxHashMap::default();
        suffix.reserve(self.suffix.len());
        for (k, mut v) in self.suffix {
            v.dedup_by_key(|(key, _)| *key);
            suffix.insert(k, v.into_boxed_slice());
        }
        let patterns = Patterns {
            exact: exact.len(),
            suffix,
            suffix_labels,
            all: self.all,
        };
        (patterns, exact)
    }
}
