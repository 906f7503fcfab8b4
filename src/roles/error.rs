//! What can go wrong with roles, each naming the input and the fix.

/// Errors of `app db roles` and of `migrate`'s role handling.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RolesError {
    /// A role name is unusable.
    #[error("{what}: `{name}` is not a usable role name: {reason}")]
    BadName {
        /// Where the name came from.
        what: String,
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// A login or password the command needs is not in the sealed file.
    #[error(
        "the sealed file {file} has no {key}: seal it with \
         `app seal set {file} {key}` (see docs/secrets.md, \"Database roles\")"
    )]
    Missing {
        /// The sealed file.
        file: String,
        /// The key it lacks.
        key: String,
    },
    /// Two names that must differ do not.
    #[error("role {name}: {reason}")]
    Clash {
        /// The name.
        name: String,
        /// Which names clash, and what to do.
        reason: String,
    },
    /// `--adopt-from` names a role the database does not have.
    #[error(
        "--adopt-from {role}: there is no such role in this database; name the role that owns the tables (`\\dt` in psql shows it)"
    )]
    NoSuchRole {
        /// The role.
        role: String,
    },
    /// `migrate`'s login may not work as the owner role (or the role is missing).
    #[error(
        "migrate logs in as {login}, which cannot `set role {role}` (migrate.owner_role): \
         {reason}; run `app db roles` (docs/secrets.md, \"Database roles\") to create the \
         roles and make {login} a member, or unset APP_MIGRATE__OWNER_ROLE"
    )]
    NotMember {
        /// The login.
        login: String,
        /// The owner role.
        role: String,
        /// The role is missing, or the login is no member.
        reason: String,
    },
    /// `db roles retire` was refused.
    #[error("refusing to retire {name}: {reason}")]
    RetireRefused {
        /// The role.
        name: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The admin connection cannot create roles or grant.
    #[error(
        "{user} may not manage roles here ({detail}): connect as the superuser \
         (--admin-user postgres --admin-password-from POSTGRES_PASSWORD) or a role with \
         CREATEROLE that owns the schema, or use --print-sql with psql as postgres"
    )]
    AdminPrivilege {
        /// The admin login.
        user: String,
        /// What PostgreSQL said.
        detail: String,
    },
    /// `--print-sql` would print password verifiers to a terminal.
    #[error(
        "refusing to print the roles' SQL (password verifiers) to a terminal: pipe it into \
         `kubectl exec -i statefulset/postgres -- psql -v ON_ERROR_STOP=1 -U postgres -d \
         discbaboons_db`, or drop --print-sql to connect directly"
    )]
    Terminal,
    /// The database failed otherwise.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
