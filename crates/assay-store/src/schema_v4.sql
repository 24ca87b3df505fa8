-- Schema v4: who gave each label and ruling (a reviewer name; '' when not given, as before v4).
ALTER TABLE check_labels ADD COLUMN rater TEXT NOT NULL DEFAULT '';
ALTER TABLE rulings ADD COLUMN rater TEXT NOT NULL DEFAULT '';
