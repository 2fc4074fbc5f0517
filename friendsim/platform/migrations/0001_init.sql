-- friendsim platform schema, version 1.
-- events is the append-only log (the truth); every other table is derived from it by
-- friendsim.platform.projection and can be rebuilt by friendsim.platform.replay.

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    t       REAL NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT,
    payload TEXT NOT NULL
);

CREATE TABLE agents (
    agent_id   TEXT PRIMARY KEY CHECK (length(agent_id) > 0),
    name       TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes)),
    t          REAL NOT NULL,
    seq        INTEGER NOT NULL UNIQUE
);

CREATE TABLE posts (
    post_id   INTEGER PRIMARY KEY CHECK (post_id > 0),
    seq       INTEGER NOT NULL UNIQUE,
    t         REAL NOT NULL,
    author    TEXT NOT NULL REFERENCES agents(agent_id),
    text      TEXT NOT NULL,
    topic     TEXT NOT NULL,
    parent_id INTEGER REFERENCES posts(post_id),
    root_id   INTEGER REFERENCES posts(post_id),
    quote_of  INTEGER REFERENCES posts(post_id),
    tone      TEXT,
    likes     INTEGER NOT NULL DEFAULT 0 CHECK (likes >= 0),
    dislikes  INTEGER NOT NULL DEFAULT 0 CHECK (dislikes >= 0),
    replies   INTEGER NOT NULL DEFAULT 0 CHECK (replies >= 0),
    CHECK (length(trim(text)) > 0 OR quote_of IS NOT NULL),
    CHECK ((parent_id IS NULL) = (root_id IS NULL)),
    CHECK (parent_id IS NULL OR parent_id < post_id),
    CHECK (quote_of IS NULL OR quote_of < post_id)
);
CREATE INDEX posts_t ON posts(t);
CREATE INDEX posts_author_t ON posts(author, t);
CREATE INDEX posts_parent ON posts(parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE mentions (
    post_id INTEGER NOT NULL REFERENCES posts(post_id),
    pos     INTEGER NOT NULL CHECK (pos >= 0),
    agent   TEXT NOT NULL REFERENCES agents(agent_id),
    PRIMARY KEY (post_id, agent),
    UNIQUE (post_id, pos)
) WITHOUT ROWID;
CREATE INDEX mentions_agent ON mentions(agent);

CREATE TABLE votes (
    voter   TEXT NOT NULL REFERENCES agents(agent_id),
    post_id INTEGER NOT NULL REFERENCES posts(post_id),
    value   INTEGER NOT NULL CHECK (value IN (-1, 1)),
    t       REAL NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (voter, post_id)
) WITHOUT ROWID;

-- SQLite CHECK constraints cannot look at other tables: a trigger enforces "no vote on own post".
CREATE TRIGGER votes_no_self_vote BEFORE INSERT ON votes
WHEN NEW.voter = (SELECT author FROM posts WHERE post_id = NEW.post_id)
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: an agent cannot vote on its own post');
END;

CREATE TABLE follows (
    follower TEXT NOT NULL REFERENCES agents(agent_id),
    target   TEXT NOT NULL REFERENCES agents(agent_id),
    t        REAL NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (follower, target),
    CHECK (follower <> target)
) WITHOUT ROWID;
CREATE INDEX follows_target ON follows(target);

CREATE TABLE dms (
    dm_id     INTEGER PRIMARY KEY CHECK (dm_id > 0),
    seq       INTEGER NOT NULL UNIQUE,
    t         REAL NOT NULL,
    sender    TEXT NOT NULL REFERENCES agents(agent_id),
    recipient TEXT NOT NULL REFERENCES agents(agent_id),
    text      TEXT NOT NULL CHECK (length(trim(text)) > 0),
    topic     TEXT NOT NULL DEFAULT '',
    mentions  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(mentions)),
    reply_to  INTEGER REFERENCES dms(dm_id),
    tone      TEXT,
    CHECK (sender <> recipient),
    CHECK (reply_to IS NULL OR reply_to < dm_id)
);
CREATE INDEX dms_recipient_t ON dms(recipient, t);

CREATE TABLE exposures (
    seq     INTEGER NOT NULL,
    rank    INTEGER NOT NULL CHECK (rank >= 0),
    agent   TEXT NOT NULL REFERENCES agents(agent_id),
    post_id INTEGER NOT NULL REFERENCES posts(post_id),
    topic   TEXT NOT NULL,
    ranker  TEXT NOT NULL,
    t       REAL NOT NULL,
    PRIMARY KEY (seq, rank)
) WITHOUT ROWID;
CREATE INDEX exposures_agent_t ON exposures(agent, t);
