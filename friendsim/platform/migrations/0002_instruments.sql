-- friendsim platform schema, version 2: research instruments (interventions, moderation,
-- surveys). Like every table but events, these are projections of the log.

CREATE TABLE injected_items (
    post_id INTEGER PRIMARY KEY REFERENCES posts(post_id),
    item_id TEXT NOT NULL CHECK (length(item_id) > 0),
    truth   TEXT NOT NULL CHECK (truth IN ('false', 'true', 'unverified')),
    source  TEXT NOT NULL DEFAULT '',
    seq     INTEGER NOT NULL UNIQUE
);

CREATE TABLE moderation (
    seq          INTEGER PRIMARY KEY,
    t            REAL NOT NULL,
    window       INTEGER NOT NULL CHECK (window >= 1),
    moderator    TEXT NOT NULL CHECK (length(moderator) > 0),
    action       TEXT NOT NULL
                 CHECK (action IN ('remove', 'label', 'downrank', 'shadowban', 'suspend')),
    post_id      INTEGER NOT NULL REFERENCES posts(post_id),
    author       TEXT NOT NULL REFERENCES agents(agent_id),
    label        TEXT NOT NULL DEFAULT '',
    from_window  INTEGER,
    until_window INTEGER,
    CHECK (action <> 'label' OR length(label) > 0),
    CHECK ((action = 'suspend') = (from_window IS NOT NULL)),
    CHECK (until_window IS NULL OR (from_window IS NOT NULL AND until_window >= from_window))
);
CREATE INDEX moderation_post ON moderation(post_id);

CREATE TABLE suspensions (
    seq          INTEGER PRIMARY KEY,
    agent        TEXT NOT NULL REFERENCES agents(agent_id),
    from_window  INTEGER NOT NULL CHECK (from_window >= 1),
    until_window INTEGER CHECK (until_window IS NULL OR until_window >= from_window),
    by           TEXT NOT NULL
);
CREATE INDEX suspensions_agent ON suspensions(agent);

CREATE TABLE survey_answers (
    seq      INTEGER NOT NULL,
    agent    TEXT NOT NULL REFERENCES agents(agent_id),
    survey   TEXT NOT NULL,
    window   INTEGER NOT NULL CHECK (window >= 1),
    question TEXT NOT NULL CHECK (length(question) > 0),
    value    INTEGER NOT NULL,
    PRIMARY KEY (seq, question)
) WITHOUT ROWID;
CREATE INDEX survey_answers_window ON survey_answers(survey, window);
