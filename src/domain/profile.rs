//! The free-text profile fields of `user_profiles`, bounded by their column widths.

use super::{Invalid, bounded_text};

macro_rules! text_field {
    ($(#[$doc:meta])* $ty:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $ty(String);

        impl $ty {
            /// Most characters allowed.
            pub(crate) const MAX: usize = $max;

            /// Trims the value and checks its length. An empty value is kept as empty.
            pub(crate) fn parse(raw: &str) -> Result<$ty, Invalid> {
                bounded_text($field, raw, Self::MAX).map($ty)
            }

            /// The value, owned.
            pub(crate) fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

text_field!(
    /// A display name (`varchar(100)`).
    Name,
    "name",
    100
);
text_field!(
    /// Where the user is (`varchar(100)`).
    Location,
    "location",
    100
);
text_field!(
    /// Free text about the user (`text`, bounded here so a profile stays a profile).
    Bio,
    "bio",
    2000
);
text_field!(
    /// The seed's baboon personality type (`varchar(50)`), e.g. `Analytical`.
    PersonalityType,
    "personality_type",
    50
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(Name::parse("  Alice ").unwrap().into_inner(), "Alice");
        assert!(Name::parse(&"x".repeat(101)).is_err());
        assert_eq!(
            Location::parse(&"ö".repeat(100))
                .unwrap()
                .into_inner()
                .chars()
                .count(),
            100
        );
        assert!(Bio::parse("line one\nline two").is_ok());
        assert_eq!(Bio::parse("a\u{0}b").unwrap_err().field, "bio");
        assert_eq!(
            PersonalityType::parse(&"x".repeat(51)).unwrap_err().field,
            "personality_type"
        );
    }
}
